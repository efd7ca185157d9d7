"""Video jobs on Runway's task API through /v1/videos with the openai SDK, against a mock
written from Runway's public API documentation (tasks, statuses, its version header)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.providers.mock_runway import RUNWAY_KEY, MockRunway
from tests.providers.mock_video import VIDEO_BYTES
from tests.providers.test_videos import records, sdk, wait_done
from tests.support import ThreadedServer

FRAME = b"\x89PNG\r\n\x1a\n" + b"pixels" * 10


@pytest.fixture(scope="module")
def runway_server() -> Iterator[tuple[MockRunway, ThreadedServer]]:
    mock = MockRunway()
    server = ThreadedServer(mock.app).start()
    mock.url = server.url
    yield mock, server
    server.stop()


@pytest.fixture
def gw(start_providers, runway_server):
    base = runway_server[1].url + "/v1"
    upstreams = {
        "runway": {"api": "runway", "base_url": base, "api_key_env": "RUNWAYML_API_SECRET"},
        "runway-nokey": {"api": "runway", "base_url": base},
    }
    price = {"per_second": 0.12}
    models = {
        "gen45": {"upstream": "runway", "model": "gen4.5", "modality": "video", "price": price},
        "turbo": {"upstream": "runway", "model": "gen4_turbo", "modality": "video"},
        "unauthorised": {"upstream": "runway-nokey", "model": "gen4.5", "modality": "video"},
    }
    return start_providers(
        {"video": ["gen45", "turbo"], "tts": ["unauthorised"]},
        extra_upstreams=upstreams,
        extra_models=models,
        tier={"quotas": {"video_generation": {"minutes_per_day": 0.25}}},  # 15 seconds a day
        env={"RUNWAYML_API_SECRET": RUNWAY_KEY},
        video_poll_interval_s=0.05,
        settings={"video_content_allow_insecure": True},  # the mock's files: http, 127.0.0.1
    )


def test_text_to_video_task_created_polled_downloaded_and_metered(gw, runway_server):
    mock = runway_server[0]
    with sdk(gw) as client:
        job = client.videos.create(
            model="gen45", prompt="a red fox in snow", seconds="5", size="1280x720"
        )
        assert job.status == "queued" and job.model == "gen45"
        sent, headers = mock.submissions[-1], mock.headers[-1]
        assert sent == {"path": "/v1/text_to_video", "model": "gen4.5", "duration": 5,
                        "ratio": "1280:720", "promptText": "a red fox in snow"}  # fmt: skip
        assert headers["x-runway-version"] == "2024-11-06"
        assert headers["authorization"] == f"Bearer {RUNWAY_KEY}"
        done = wait_done(client, job.id)
        assert done.status == "completed" and done.progress == 100
        assert mock.headers[-1]["x-runway-version"] == "2024-11-06"  # the polls send it too
        assert client.videos.download_content(job.id).read() == VIDEO_BYTES
    (record,) = records(gw)
    assert record["model"] == "gen45" and record["provider"] == "runway"
    assert record["video_ms"] == 5000 and record["cost_usd"] == pytest.approx(0.60)


def test_an_uploaded_first_frame_makes_an_image_to_video_task(gw, runway_server):
    mock = runway_server[0]
    with sdk(gw) as client:
        job = client.videos.create(
            model="turbo",
            prompt="the frame comes alive",
            seconds="5",
            input_reference=("frame.png", FRAME, "image/png"),
        )
        sent = mock.submissions[-1]
        assert sent["path"] == "/v1/image_to_video" and sent["model"] == "gen4_turbo"
        assert sent["ratio"] == "1280:720" and sent["duration"] == 5
        assert sent["promptImage"] == "data:image/png;base64," + base64.b64encode(FRAME).decode()
        assert wait_done(client, job.id).status == "completed"


def test_a_throttled_task_waits_queued_then_completes(gw, runway_server):
    with sdk(gw) as client:
        job = client.videos.create(model="gen45", prompt="throttle me", seconds="5")
        assert wait_done(client, job.id).status == "completed"


def test_a_failed_task_reports_runways_reason_and_is_not_charged(gw):
    with sdk(gw) as client:
        job = client.videos.create(model="gen45", prompt="please fail", seconds="5")
        done = wait_done(client, job.id)
        assert done.status == "failed"
        assert "flagged by moderation" in done.error.message
        assert "SAFETY.INPUT.TEXT" in done.error.message
    (record,) = records(gw)
    assert record["status"] == 502 and record["video_ms"] == 0 and record["cost_usd"] == 0
