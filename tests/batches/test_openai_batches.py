"""The Files and Batches workflow through the openai SDK, run by the gateway itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.config.runtime import Runtime
from tests.conftest import RunningGateway, StartGateway
from tests.e2e.test_metrics import samples, scrape, value
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.support import DEFAULT_ROUTES
from tests.ui.signin import sign_in

WAIT_S = 30


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(
    custom_id: str, model: str = "text", url: str = "/v1/chat/completions"
) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": f"hello {custom_id}"}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def client(gateway: RunningGateway, tier: str = "free") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key(tier), max_retries=0)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finished(api: openai.OpenAI, batch_id: str) -> Any:
    def check() -> Any:
        batch = api.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None

    return wait_for(check, f"batch {batch_id} to finish")


@pytest.fixture(params=["memory", "redis"])
def gateway(
    request: pytest.FixtureRequest,
    start_gateway: StartGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RunningGateway:
    monkeypatch.setenv("GATEWAY_FILES_DIR", str(tmp_path / "files"))
    runtime = Runtime()
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis")
        runtime = Runtime(redis_url=redis.url)
    tiers = {
        "free": {
            "routes": {
                **DEFAULT_ROUTES,
                "text": ["ok", "ok-b", "slowfirst"],
                "code": ["bad-400"],  # an upstream that refuses every request
            },
            "batch_price_percent": 50,
        },
        "pro": {"routes": DEFAULT_ROUTES},
    }
    return start_gateway(tiers, runtime=runtime, first_byte_timeout_s=5)


def test_the_sdk_workflow_files_batches_output_and_delete(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    api = client(gateway)
    lines = [chat_line(f"req-{n}") for n in range(6)]
    uploaded = api.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    batch = api.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status in ("in_progress", "validating")
    done = finished(api, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (6, 6)
    assert done.metadata == {"job": "nightly"}
    assert done.output_file_id and done.error_file_id is None
    output = [json.loads(line) for line in api.files.content(done.output_file_id).text.splitlines()]
    assert sorted(item["custom_id"] for item in output) == [f"req-{n}" for n in range(6)]
    for item in output:
        assert item["error"] is None and item["id"].startswith("batch_req_")
        assert item["response"]["status_code"] == 200
        assert item["response"]["request_id"]
        assert item["response"]["body"]["object"] == "chat.completion"
    received = [r.json["messages"][0]["content"] for r in upstream.requests if r.json]
    assert sorted(received) == sorted(f"hello req-{n}" for n in range(6))
    listed = api.batches.list()
    assert [b.id for b in listed.data] == [batch.id]
    assert {f.id for f in api.files.list().data} == {uploaded.id, done.output_file_id}
    deleted = api.files.delete(uploaded.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        api.files.retrieve(uploaded.id)


def test_an_embeddings_batch_and_a_failed_line_in_the_error_file(gateway: RunningGateway) -> None:
    api = client(gateway)
    embed = [
        {"custom_id": f"e-{n}", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": "embedding", "input": f"text {n}"}}
        for n in range(3)
    ]  # fmt: skip
    uploaded = api.files.create(file=("e.jsonl", jsonl(embed)), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = finished(api, batch.id)
    assert done.status == "completed" and done.error_file_id is None and done.output_file_id
    output = [json.loads(line) for line in api.files.content(done.output_file_id).text.splitlines()]
    assert sorted(item["custom_id"] for item in output) == ["e-0", "e-1", "e-2"]
    for item in output:
        body = item["response"]["body"]
        assert body["object"] == "list" and body["data"][0]["object"] == "embedding"

    mixed = [chat_line("fine"), chat_line("refused", model="code")]
    uploaded = api.files.create(file=("m.jsonl", jsonl(mixed)), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = finished(api, batch.id)
    assert done.status == "completed"  # a line's error answer does not fail its batch
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert done.output_file_id and done.error_file_id
    (good,) = [json.loads(x) for x in api.files.content(done.output_file_id).text.splitlines()]
    (bad,) = [json.loads(x) for x in api.files.content(done.error_file_id).text.splitlines()]
    assert good["custom_id"] == "fine" and good["response"]["status_code"] == 200
    assert bad["custom_id"] == "refused" and bad["error"] is None  # OpenAI's shape: the answer
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["message"]

    scraped = samples(scrape(gateway))
    lines = "gateway_batch_lines_total"
    assert value(scraped, lines, endpoint="/v1/embeddings", outcome="completed") == 3
    assert value(scraped, lines, endpoint="/v1/chat/completions", outcome="completed") == 1
    assert value(scraped, lines, endpoint="/v1/chat/completions", outcome="failed") == 1
    ended = "gateway_batches_ended_total"
    assert value(scraped, ended, endpoint="/v1/embeddings", status="completed") == 1
    assert value(scraped, ended, endpoint="/v1/chat/completions", status="completed") == 1
    assert value(scraped, "gateway_batch_lines_in_flight") == 0


def test_usage_records_carry_the_batch_and_its_price(gateway: RunningGateway) -> None:
    api = client(gateway)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("one")])), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    finished(api, batch.id)
    api.chat.completions.create(model="text", messages=[{"role": "user", "content": "hello one"}])

    def records() -> list[dict[str, Any]]:
        reply = httpx.get(
            gateway.base_url + "/usage", headers={"authorization": f"Bearer {gateway.key()}"}
        )
        found: list[dict[str, Any]] = reply.json()["data"]
        return found if len(found) == 2 else []

    batched, interactive = sorted(wait_for(records, "two usage records"), key=lambda r: r["ts"])
    assert batched["batch_id"] == batch.id and interactive["batch_id"] is None
    assert batched["total_tokens"] == interactive["total_tokens"] > 0
    assert batched["cost_usd"] == pytest.approx(
        interactive["cost_usd"] / 2, abs=1e-6
    )  # whole micro-USD
    assert interactive["cost_usd"] > 0


def test_cancel_stops_a_batch(gateway: RunningGateway, upstream: MockUpstream) -> None:
    api = client(gateway)
    lines = [chat_line(f"slow-{n}", model="slowfirst") for n in range(40)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelling = api.batches.cancel(batch.id)
    started_before = len(upstream.requests)  # on a loaded host a first wave may have run
    assert cancelling.status in ("cancelling", "cancelled")
    done = finished(api, batch.id)
    assert done.status == "cancelled"
    assert done.request_counts is not None
    assert done.request_counts.completed <= len(upstream.requests)
    # after the cancel, at most the lines already on their way (4 per batch) reach upstream
    assert len(upstream.requests) <= started_before + 4 < len(lines)


def test_bad_input_is_refused_and_nothing_runs(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    api = client(gateway)
    with pytest.raises(openai.BadRequestError, match="Line 2 of the batch file: not valid JSON"):
        good = jsonl([chat_line("a")])
        api.files.create(file=("x.jsonl", good + b"not json\n"), purpose="batch")
    duplicate = jsonl([chat_line("same"), chat_line("other"), chat_line("same")])
    with pytest.raises(openai.BadRequestError, match=r"Line 3 .*duplicate custom_id 'same'"):
        api.files.create(file=("x.jsonl", duplicate), purpose="batch")
    mixed = jsonl([chat_line("a"), chat_line("b", model="embed", url="/v1/embeddings")])
    mixed_file = api.files.create(file=("x.jsonl", mixed), purpose="batch")
    with pytest.raises(openai.BadRequestError, match=r"Line 2 .*batch's endpoint is /v1/chat"):
        api.batches.create(
            input_file_id=mixed_file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    unknown = api.files.create(
        file=("x.jsonl", jsonl([chat_line("a"), chat_line("b", model="no-such-model")])),
        purpose="batch",
    )
    with pytest.raises(openai.BadRequestError, match=r"Line 2 .*'no-such-model' does not exist"):
        api.batches.create(
            input_file_id=unknown.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    theirs = client(gateway, "pro").files.create(
        file=("x.jsonl", jsonl([chat_line("a")])), purpose="batch"
    )
    with pytest.raises(openai.NotFoundError):
        api.batches.create(
            input_file_id=theirs.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        api.files.content(theirs.id)
    assert api.batches.list().data == []
    assert upstream.requests == []


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_quota_refused_line_pauses_the_batch_instead_of_failing_the_rest(
    store: str,
    request: pytest.FixtureRequest,
    start_gateway: StartGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    upstream: MockUpstream,
) -> None:
    monkeypatch.setenv("GATEWAY_FILES_DIR", str(tmp_path / "files"))
    runtime = Runtime()
    if store == "redis":
        runtime = Runtime(redis_url=request.getfixturevalue("redis").url)
    quotas = {"text_generation": {"requests_per_day": 3}}
    gateway = start_gateway({"free": {"routes": DEFAULT_ROUTES, "quotas": quotas}}, runtime=runtime)
    api = client(gateway)
    lines = [chat_line(f"q-{n}") for n in range(6)]
    uploaded = api.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    def paused() -> Any:
        found = api.batches.retrieve(batch.id)
        return found if (found.metadata or {}).get("gateway_paused") else None

    found = wait_for(paused, "the batch to pause")
    assert found.status == "in_progress"
    assert "quota" in found.metadata["gateway_paused"]
    assert found.request_counts is not None
    assert (found.request_counts.completed, found.request_counts.failed) == (3, 0)
    time.sleep(0.5)
    assert len(upstream.requests) == 3
    assert api.batches.cancel(batch.id).status == "cancelling"
    done = finished(api, batch.id)
    assert done.status == "cancelled"
    assert done.request_counts is not None and done.request_counts.completed == 3


def test_the_users_dashboard_page_lists_their_batches(gateway: RunningGateway) -> None:
    api = client(gateway)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("ui")])), purpose="batch")
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    finished(api, batch.id)
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        assert sign_in(http, gateway.key()).status_code == 303
        page = http.get("/ui/me").text
    assert batch.id in page and "completed" in page
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        assert sign_in(http, gateway.key("pro")).status_code == 303
        assert batch.id not in http.get("/ui/me").text
