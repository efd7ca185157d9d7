"""Batches of a team key whose team no longer takes it (403, not 401): the batch pauses like one
of a revoked key, no further line of it runs, and the runner keeps serving every other batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.config.model import Settings
from gateway.control.plane import ControlPlane
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


def _write_as_another_replica(redis: RedisServer, kind: str, id: str, doc: Any) -> None:
    """A write by a replica that raced this one's checks (e.g. a member removed while a team
    admin minted the member's key elsewhere): the control plane takes it as any write."""

    async def run() -> None:
        store = create_store(redis.url, Settings())
        try:
            await ControlPlane(store).put(kind, id, doc, actor="test", action="race")
        finally:
            await store.aclose()

    asyncio.run(run())


def test_a_team_key_out_of_its_team_pauses_its_batch_and_no_other(
    gw: RunningGateway, upstream: MockUpstream, redis: RedisServer
) -> None:
    assert admin_call(gw, "POST", "/v1/admin/orgs", json={"id": "acme"}).status_code == 201
    team = {"id": "ml", "org": "acme", "tier": "free", "members": ["carol"]}
    assert admin_call(gw, "POST", "/v1/admin/teams", json=team).status_code == 201
    key = {"user": "carol", "tier": "free", "team": "ml"}
    made = admin_call(gw, "POST", "/v1/admin/keys", json=key)
    assert made.status_code == 201, made.text
    team_api = openai.OpenAI(base_url=gw.base_url, api_key=made.json()["key"], max_retries=0)
    other_api = openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)

    lines = [chat_line(f"t-{n}", model="slowish") for n in range(6)]
    uploaded = team_api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    team_batch = team_api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(lambda: upstream.requests, "the team batch's first line")
    document = admin_call(gw, "GET", "/v1/admin/teams/ml").json()
    document = {k: document[k] for k in ("org", "name", "tier", "limits", "created_at")}
    _write_as_another_replica(redis, "teams", "ml", {**document, "members": []})
    with pytest.raises(openai.PermissionDeniedError):  # the interactive refusal: a 403
        team_api.chat.completions.create(model="ok", messages=[{"role": "user", "content": "hi"}])

    others = [chat_line(f"o-{n}", model="ok") for n in range(3)]
    other_file = other_api.files.create(file=("o.jsonl", jsonl(others)), purpose="batch")
    other_batch = other_api.batches.create(
        input_file_id=other_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = finished(other_api, other_batch.id)
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)

    sent = [r.json["messages"][0]["content"] for r in upstream.requests if r.json]
    team_sent = [text for text in sent if text.startswith("hello t-")]
    assert len(team_sent) <= 2  # the line in flight at the removal, and none after it

    def paused() -> str | None:
        with httpx.Client(base_url=gw.url, timeout=10) as http:
            assert sign_in(http, ADMIN).status_code == 303
            page = http.get("/ui/batches").text
        return page if "paused: owner&#39;s key" in page else None

    assert team_batch.id in wait_for(paused, "the team batch to pause for its owner's key")
