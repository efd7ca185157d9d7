"""Video jobs are polled and downloaded with a key of the kind they were submitted with: the
same stored system key, or the user's own key (stored, or sent again in the header). Two
gateways share a real redis-server: one submits (and never polls), the other answers the
GETs from the job's record; the mock upstream knows a job only under the key that made it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.control.secrets_at_rest import KEY_ENV, KEY_FILE_ENV
from gateway.observe.metrics import Metrics
from gateway.secret import Secret
from gateway.store.factory import create_store
from tests.control.test_upstream_keys import MASTER
from tests.providers.mock_video import VIDEO_BYTES, MockVideo
from tests.redis_fixture import RedisServer
from tests.support import MOCK_KEY, ThreadedServer, build_config, routes_doc, tiers_doc

ADMIN = "env-admin-token-video-keys"
ALICE, BOB = "sk-client-alice-video-0123", "sk-client-bob-video-4567"
SYSTEM_KEYS = ["sk-video-system-key-one-1111", "sk-video-system-key-two-2222"]
ALICE_KEY = "sk-alice-own-video-key-3333"
BOB_HEADER_KEY = "sk-bob-header-video-key-4444"


class KeyedVideo(MockVideo):
    """OpenAI's video API where a job exists only for the key that submitted it (another
    account's job is a 404), and every status and content request's key is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, str | None]] = []  # (job id, key) of GETs

    def _foreign(self, request: Request) -> Response | None:
        job_id = request.path_params["id"]
        key = (request.headers.get("authorization") or "").removeprefix("Bearer ") or None
        self.asked.append((job_id, key))
        job = self.jobs.get(job_id)
        if job is not None and job["authorization"] != f"Bearer {key}":
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        return None

    async def openai_status(self, request: Request) -> Response:
        return self._foreign(request) or await super().openai_status(request)

    async def content(self, request: Request) -> Response:
        return self._foreign(request) or await super().content(request)

    def keys_asked(self, job_id: str) -> set[str | None]:
        return {key for asked, key in self.asked if asked == job_id}


@dataclass
class Gateway:
    url: str

    def call(self, method: str, path: str, token: str = ADMIN, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}", **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def sdk(self, token: str, **headers: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=token, max_retries=0, default_headers=headers
        )


@pytest.fixture
def video() -> Iterator[KeyedVideo]:
    mock = KeyedVideo()
    server = ThreadedServer(mock.app).start()
    mock.url = server.url
    yield mock
    server.stop()


@pytest.fixture
def pair(
    video: KeyedVideo, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Gateway, Gateway]]:
    """(submitter: never polls by itself, asker: polls its own jobs every 0.05 s)."""
    monkeypatch.setenv(KEY_ENV, MASTER)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    routes = routes_doc(video.url + "/v1")
    routes["upstreams"]["vid"] = {
        "api": "openai-videos",
        "base_url": video.url + "/v1",
        "api_key_env": "MOCK_KEY",
    }
    routes["models"]["sora"] = {"upstream": "vid", "model": "sora-2", "modality": "video"}
    tiers = tiers_doc({"free": {"routes": {"text": ["ok"], "video": ["sora"]}}})
    env = {"GATEWAY_KEYS": f"{ALICE}=free:alice,{BOB}=free:bob"}
    servers = []
    for interval in (3600.0, 0.05):
        config = build_config(routes, tiers, env)
        runtime = Runtime(redis_url=redis.url, admin_token=Secret(ADMIN))
        store = create_store(runtime.redis_url, config.settings)
        app = create_app(
            config, runtime, metrics=Metrics(), store=store, video_poll_interval_s=interval
        )
        servers.append(ThreadedServer(app).start())
    yield Gateway(servers[0].url), Gateway(servers[1].url)
    for server in servers:
        server.stop()


def _until(check: Any) -> Any:
    deadline = time.monotonic() + 10
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _ended(gw: Gateway, token: str, video_id: str, **headers: str) -> str:
    with gw.sdk(token, **headers) as client:
        status: str = _until(
            lambda: (s := client.videos.retrieve(video_id).status) in ("completed", "failed") and s
        )
        return status


def _upstream_id(video: KeyedVideo, key: str) -> str:
    (job_id,) = [i for i, job in video.jobs.items() if job["authorization"] == f"Bearer {key}"]
    return job_id


def test_jobs_are_polled_and_fetched_with_the_stored_key_they_were_made_with(
    pair: tuple[Gateway, Gateway], video: KeyedVideo
) -> None:
    submitter, asker = pair
    put = submitter.call("PUT", "/v1/admin/upstreams/vid/keys", json={"keys": SYSTEM_KEYS})
    assert put.status_code == 200, put.text
    assert _until(
        lambda: len(asker.call("GET", "/v1/admin/upstreams/vid/keys").json()["keys"]) == 2
    )

    with submitter.sdk(ALICE) as client:  # the stored keys in turn, not the env key
        jobs = [client.videos.create(model="sora", prompt="cat", seconds="4") for _ in range(2)]
    sent = [job["authorization"] for job in video.submissions]
    assert sent == [f"Bearer {key}" for key in SYSTEM_KEYS]

    for job, key in zip(jobs, SYSTEM_KEYS, strict=True):  # asked by the other gateway
        assert _ended(asker, ALICE, job.id) == "completed"
        with asker.sdk(ALICE) as client:
            assert client.videos.download_content(job.id).read() == VIDEO_BYTES
        assert video.keys_asked(_upstream_id(video, key)) == {key}

    with asker.sdk(ALICE) as client:  # a job the asker submitted: its watcher polls it
        job = client.videos.create(model="sora", prompt="dog", seconds="4")
    assert _until(lambda: video.polls.get(f"upstream-{len(video.jobs)}", 0) >= 2)
    upstream_id = f"upstream-{len(video.jobs)}"
    assert _ended(asker, ALICE, job.id) == "completed"
    assert video.keys_asked(upstream_id) <= set(SYSTEM_KEYS)
    assert MOCK_KEY not in {key for _, key in video.asked}


def test_jobs_made_with_a_users_key_are_polled_with_the_users_key(
    pair: tuple[Gateway, Gateway], video: KeyedVideo
) -> None:
    submitter, asker = pair
    assert submitter.call("PUT", "/v1/admin/settings", json={"allow_user_keys": True}).is_success
    stored = submitter.call("PUT", "/v1/me/upstream-keys/vid", ALICE, json={"key": ALICE_KEY})
    assert stored.status_code == 200, stored.text
    assert _until(
        lambda: (
            asker.call("GET", "/v1/me/upstream-keys", ALICE).json()["data"]
            and asker.call("GET", "/v1/admin/settings").json()["allow_user_keys"]
        )
    )

    with submitter.sdk(ALICE) as client:  # the user's stored key
        mine = client.videos.create(model="sora", prompt="cat", seconds="4")
    with submitter.sdk(BOB, **{"x-upstream-api-key": BOB_HEADER_KEY}) as client:  # the header
        bobs = client.videos.create(model="sora", prompt="cat", seconds="4")
    assert [job["authorization"] for job in video.submissions] == [
        f"Bearer {ALICE_KEY}",
        f"Bearer {BOB_HEADER_KEY}",
    ]

    assert _ended(asker, ALICE, mine.id) == "completed"
    with asker.sdk(ALICE) as client:
        assert client.videos.download_content(mine.id).read() == VIDEO_BYTES
    assert video.keys_asked(_upstream_id(video, ALICE_KEY)) == {ALICE_KEY}

    # bob's key is not stored: without it in the header the job is not asked about (so not
    # failed either) and has no content yet; with it, both work
    bobs_upstream = _upstream_id(video, BOB_HEADER_KEY)
    with asker.sdk(BOB) as client:
        assert client.videos.retrieve(bobs.id).status == "queued"
        with pytest.raises(openai.ConflictError):
            client.videos.download_content(bobs.id)
    assert video.keys_asked(bobs_upstream) == set()
    assert _ended(asker, BOB, bobs.id, **{"x-upstream-api-key": BOB_HEADER_KEY}) == "completed"
    with asker.sdk(BOB, **{"x-upstream-api-key": BOB_HEADER_KEY}) as client:
        assert client.videos.download_content(bobs.id).read() == VIDEO_BYTES
    assert video.keys_asked(bobs_upstream) == {BOB_HEADER_KEY}
