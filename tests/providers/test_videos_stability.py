"""Video jobs on Stability AI's image-to-video API through /v1/videos, SDK and plain HTTP.

Against a mock written from Stability's public v2beta reference: the first frame sent as
``image``, the job polled at its result endpoint, the video's bytes streamed through."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.providers.mock_stability import (
    FILTERED_SEED,
    STABILITY_KEY,
    MockStability,
    jpeg,
    png,
)
from tests.providers.mock_video import VIDEO_BYTES
from tests.providers.test_videos import records, sdk, wait_done
from tests.support import ThreadedServer

FRAME = png(1024, 576)
WRONG_KEY = "sk-wrongstability9876543210fedcbaFEDCBA"


@pytest.fixture(scope="module")
def stability_server() -> Iterator[tuple[MockStability, ThreadedServer]]:
    mock = MockStability()
    server = ThreadedServer(mock.app).start()
    yield mock, server
    server.stop()


@pytest.fixture
def gw(start_providers, stability_server):
    base = stability_server[1].url + "/v2beta"
    other = base.replace("127.0.0.1", "localhost")
    upstreams = {
        "stability": {"api": "stability", "base_url": base, "api_key_env": "STABILITY_API_KEY"},
        "stability-wrong": {"api": "stability", "base_url": other, "api_key_env": "WRONG_KEY"},
    }
    price = {"per_second": 0.05}
    models = {
        "svd": {"upstream": "stability", "model": "svd", "modality": "video", "price": price},
        "svd-wrong": {"upstream": "stability-wrong", "model": "svd-xt", "modality": "video"},
    }
    return start_providers(
        {"video": ["svd"], "tts": ["svd-wrong"]},
        extra_upstreams=upstreams,
        extra_models=models,
        tier={"quotas": {"video_generation": {"minutes_per_day": 1}}},
        env={"STABILITY_API_KEY": STABILITY_KEY, "WRONG_KEY": WRONG_KEY},
        video_poll_interval_s=0.05,
    )


def post_video(gw, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.keys['free']}"}
    return httpx.post(gw.base_url + "/videos", json=body, headers=headers, timeout=10)


def test_an_uploaded_frame_is_polled_to_completion_and_its_video_streamed(gw, stability_server):
    mock = stability_server[0]
    with sdk(gw) as client:
        job = client.videos.create(
            model="svd",
            prompt="the frame comes alive",
            input_reference=("frame.png", FRAME, "image/png"),
            extra_body={"seed": 7, "cfg_scale": 2.5, "motion_bucket_id": 200},
        )
        assert job.status == "queued" and job.model == "svd"
        sent = mock.submissions[-1]
        assert sent["image"] == FRAME and sent["content_type"] == "image/png"
        assert (sent["seed"], sent["cfg_scale"], sent["motion_bucket_id"]) == (7, 2.5, 200)
        assert mock.headers[-1]["authorization"] == f"Bearer {STABILITY_KEY}"
        done = wait_done(client, job.id)
        assert done.status == "completed" and done.progress == 100 and done.error is None
        polls = len(mock.results)
        assert polls >= 2  # 202 in progress, then 200
        assert all(h["accept"] == "video/*" for h in mock.results)  # never the base64 JSON
        assert client.videos.download_content(job.id).read() == VIDEO_BYTES
        assert len(mock.results) == polls + 1  # the content: the result answer again
    (record,) = records(gw)
    assert record["model"] == "svd" and record["provider"] == "stability"
    assert record["video_ms"] == 4000 and record["cost_usd"] == pytest.approx(0.20)


@pytest.mark.parametrize(
    ("frame", "content_type"),
    [(png(768, 768), "image/png"), (jpeg(576, 1024), "image/jpeg")],
    ids=["png", "jpeg"],
)
def test_a_data_uri_frame_in_a_json_request(gw, stability_server, frame, content_type):
    mock = stability_server[0]
    uri = f"data:{content_type};base64," + base64.b64encode(frame).decode()
    response = post_video(gw, {"model": "svd", "prompt": "x", "input_reference": uri})
    assert response.status_code == 200, response.text
    sent = mock.submissions[-1]
    assert sent["image"] == frame and sent["content_type"] == content_type
    with sdk(gw) as client:
        assert wait_done(client, response.json()["id"]).status == "completed"


def test_a_result_stability_no_longer_keeps_is_a_502_for_its_content(gw, stability_server):
    mock = stability_server[0]
    with sdk(gw) as client:
        job = client.videos.create(
            model="svd", prompt="x", input_reference=("frame.png", FRAME, "image/png")
        )
        assert wait_done(client, job.id).status == "completed"
        mock.generations.clear()  # Stability deletes a result 24 hours after generation
        with pytest.raises(openai.APIStatusError) as refused:
            client.videos.download_content(job.id)
        assert refused.value.status_code == 502
        assert "404" in refused.value.message
        assert client.videos.retrieve(job.id).status == "completed"  # the job itself stands


@pytest.mark.parametrize(
    "reference",
    [None, "https://example.com/frame.png", "data:image/png;base64,@@not base64@@"],
)
def test_without_an_image_it_is_refused_naming_the_field(gw, stability_server, reference):
    mock = stability_server[0]
    submitted = len(mock.submissions)
    body = {"model": "svd", "prompt": "a fox", "seconds": "4"}
    if reference is not None:
        body["input_reference"] = reference
    response = post_video(gw, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "input_reference" and "input_reference" in error["message"]
    assert error["type"] == "invalid_request_error"
    assert len(mock.submissions) == submitted
    with sdk(gw) as client:
        assert client.videos.list().data == []


def test_a_filtered_video_is_a_failed_job_with_the_reason_and_not_charged(gw):
    with sdk(gw) as client:
        job = client.videos.create(
            model="svd",
            prompt="x",
            input_reference=("frame.png", FRAME, "image/png"),
            extra_body={"seed": FILTERED_SEED},
        )
        done = wait_done(client, job.id)
        assert done.status == "failed"
        assert "CONTENT_FILTERED" in done.error.message
        with pytest.raises(openai.ConflictError):
            client.videos.download_content(job.id)
    (record,) = records(gw)
    assert record["status"] == 502 and record["video_ms"] == 0 and record["cost_usd"] == 0


@pytest.mark.parametrize(
    ("frame", "fields", "status", "says"),
    [
        (png(512, 512), {}, 400, "dimensions must be one of"),
        (FRAME, {"cfg_scale": 11}, 400, "cfg_scale: must be between"),
        (png(1024, 576, padding=70_000), {}, 413, "too large"),
        (FRAME, {"seed": 403}, 403, "content moderation"),
        (FRAME, {"seed": 422}, 422, "could not be processed"),
        (FRAME, {"seed": 429}, 429, "rate limit"),
        (FRAME, {"seed": 500}, 500, "unexpected server error"),
    ],
    ids=["size", "cfg_scale", "too-large", "moderation", "422", "429", "500"],
)
def test_stabilitys_errors_reach_the_caller_openai_shaped(gw, frame, fields, status, says):
    uri = "data:image/png;base64," + base64.b64encode(frame).decode()
    response = post_video(gw, {"model": "svd", "prompt": "x", "input_reference": uri, **fields})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] and set(error) == {"message", "type", "param", "code"}
    with sdk(gw) as client:
        assert client.videos.list().data == []  # no job recorded


def test_the_bearer_key_is_never_in_errors_or_logs(gw, stability_server, caplog):
    caplog.set_level(logging.DEBUG)
    mock = stability_server[0]
    uri = "data:image/png;base64," + base64.b64encode(FRAME).decode()
    response = post_video(gw, {"model": "svd-wrong", "prompt": "x", "input_reference": uri})
    assert mock.headers[-1]["authorization"] == f"Bearer {WRONG_KEY}"  # the mock quoted it
    assert response.status_code == 401 and "invalid API key" in response.text
    assert WRONG_KEY not in response.text
    with sdk(gw) as client:
        job = client.videos.create(
            model="svd", prompt="x", input_reference=("frame.png", FRAME, "image/png")
        )
        assert wait_done(client, job.id).status == "completed"
        client.videos.download_content(job.id).read()
        shown = client.videos.retrieve(job.id).model_dump_json()
    assert STABILITY_KEY not in shown
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged  # the gateway did log (the request lines): the check below is not vacuous
    assert STABILITY_KEY not in logged and WRONG_KEY not in logged
