"""Batches: an invalid owner's key pauses the batch (not its lines) until the key is valid
again; /v1/responses lines; a tier's limit of lines in flight; the operators' batches page."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import httpx
import openai
import pytest

from gateway.batches.jsonl import BatchLine
from gateway.batches.records import BatchRecord
from gateway.batches.runner import LineOutcome
from gateway.batches.service import Batches
from gateway.batches.settings import BatchSettings
from gateway.config.model import Settings
from gateway.store.factory import create_store
from tests.batches.paused_gateway import ADMIN, admin_call, start_paused_gateway
from tests.batches.test_openai_batches import chat_line, finished, jsonl, wait_for
from tests.conftest import RunningGateway, StartGateway
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.ui.signin import sign_in


@pytest.fixture
def gw(
    start_gateway: StartGateway,
    redis: RedisServer,
    upstream: MockUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RunningGateway:
    return start_paused_gateway(start_gateway, redis, upstream, tmp_path, monkeypatch)


def test_an_invalid_owner_key_pauses_the_batch_until_it_is_valid_again(
    gw: RunningGateway, upstream: MockUpstream
) -> None:
    created = admin_call(gw, "POST", "/v1/admin/keys", json={"user": "carol", "tier": "free"})
    key, key_id = created.json()["key"], created.json()["id"]
    api = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
    lines = [chat_line(f"k-{n}", model="slowish") for n in range(6)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    past = {"expires_at": time.time() - 60}
    assert admin_call(gw, "PATCH", f"/v1/admin/keys/{key_id}", json=past).status_code == 200

    def paused() -> str | None:
        with httpx.Client(base_url=gw.url, timeout=10) as http:
            assert sign_in(http, ADMIN).status_code == 303
            page = http.get("/ui/batches").text
        return page if "paused: owner&#39;s key" in page else None

    page = wait_for(paused, "the batch to pause for its owner's key")
    assert batch.id in page and "carol" in page
    time.sleep(1.5)  # paused: the lines wait (none fails for the key)
    assert len(upstream.requests) < 6
    assert admin_call(gw, "PATCH", f"/v1/admin/keys/{key_id}", json={"expires_at": None}).is_success
    done = finished(api, batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (6, 0)
    answered = [r.json["messages"][0]["content"] for r in upstream.requests if r.json]
    assert sorted(answered) == sorted(f"hello k-{n}" for n in range(6))  # each exactly once


def test_responses_lines_and_the_operators_page(gw: RunningGateway) -> None:
    api = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)
    line = {
        "custom_id": "r-1",
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": "ok", "input": "Hi", "instructions": "Be brief."},
    }
    uploaded = api.files.create(file=("in.jsonl", jsonl([line])), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )
    done = finished(api, batch.id)
    assert done.status == "completed" and done.output_file_id is not None
    result = api.files.content(done.output_file_id).json()
    body = result["response"]["body"]
    assert result["custom_id"] == "r-1" and body["object"] == "response"
    assert body["output"][0]["content"][0]["type"] == "output_text"

    with httpx.Client(base_url=gw.url, timeout=10) as http:
        assert sign_in(http, ADMIN).status_code == 303
        page = http.get("/ui/batches")
    assert page.status_code == 200
    assert batch.id in page.text and "user-free" in page.text and "completed" in page.text


def test_a_tier_limit_bounds_its_lines_in_flight(redis: RedisServer, tmp_path: Path) -> None:
    """The runner against real Redis, its lines answered by a stand-in that counts how many
    are in flight at once (the runner's seam: the app plugs the pipeline in there)."""

    async def scenario() -> tuple[int, int]:
        settings = BatchSettings(files_dir=str(tmp_path), concurrency=8, user_concurrency=8)
        store = create_store(redis.url, Settings())
        service = Batches(settings, store)
        in_flight, most = 0, 0

        async def execute(record: BatchRecord, line: BatchLine) -> LineOutcome:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            return LineOutcome(200, b'{"ok": true}', f"req-{line.number}")

        service.runner.execute = execute
        service.runner.tier_of = lambda record: ("free", 2)
        ids = []
        for owner in ("u1", "u2"):
            lines = [chat_line(f"{owner}-{n}") for n in range(6)]
            file = await service.files.create(owner, io.BytesIO(jsonl(lines)), "in.jsonl", "batch")
            record = await service.create(
                owner,
                "0" * 64,
                {
                    "input_file_id": file.id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
                lambda model, body: None,
            )
            ids.append((owner, record.id))
        await service.runner.start()
        try:
            for owner, batch_id in ids:
                while (await service.get(owner, batch_id))[0].status != "completed":
                    await asyncio.sleep(0.05)
        finally:
            await service.runner.aclose()
        return most, len(ids)

    most, batches = asyncio.run(scenario())
    assert batches == 2 and most == 2  # 8 allowed per replica and per user; the tier: 2
